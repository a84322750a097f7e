// Names of what calico-docker creates in Docker and in IPAM: the network,
// container labels, handle prefixes, the plugin's socket and driver ids.
// One definition each; the plugin, the proxy's interceptors, the reconciler
// and calicoctl all take them from here.

/** The host's Docker network that every Calico container joins. */
export function calicoNetworkName(): string {
  return 'calico';
}

/** Default plugin (and driver) name: the socket is /run/docker/plugins/<name>.sock. */
export const DEFAULT_PLUGIN_NAME = 'calico';
export const DEFAULT_PLUGIN_DIR = '/run/docker/plugins';

/** IPAM handles of addresses the proxy reserved before the container existed. */
export const RESERVATION_HANDLE_PREFIX = 'resv-';
/** IPAM handles of addresses the Docker IPAM driver allocated itself (`--ip`, auto without the proxy). */
export const DOCKER_HANDLE_PREFIX = 'docker-';
/** Container label carrying the reservation handle. */
export const HANDLE_LABEL = 'org.projectcalico.handle';
/** Container label carrying the profiles asked for with CALICO_PROFILE (comma list). */
export const PROFILES_LABEL = 'org.projectcalico.profiles';

/** IPAM pool ids the driver hands Docker; they tell the address family of later requests. */
export const POOL_ID_V4 = 'CalicoPoolIPv4';
export const POOL_ID_V6 = 'CalicoPoolIPv6';
export const ADDRESS_SPACE_LOCAL = 'CalicoLocalAddressSpace';
export const ADDRESS_SPACE_GLOBAL = 'CalicoGlobalAddressSpace';

/** Docker's marker on the gateway address request. */
export const GATEWAY_REQUEST_TYPE = 'com.docker.network.gateway';
