// The one place for the names of things calico-docker makes: the Docker
// network, labels and handle prefixes (./docker), host interfaces, MACs and
// gateways (./interfaces), iptables chains and ipsets (./kernel).
export * from './docker';
export * from './interfaces';
export * from './kernel';
