// The start path's shortcut: a container the proxy created has its reserved
// address noted in the reservation book, and the plugin's registry knows the
// live endpoint holding that address (endpoint id, veth, MAC). Together they
// make the endpoint record without a call to dockerd.
import type { EndpointRegistry } from '../plugin/endpoints';
import type { ReservationBook } from '../proxy/interceptors/reservations';
import type { EndpointRecord } from './container-endpoint';
import type { KnownEndpoint } from './endpoint-recorder';

export function knownFromPlugin(host: string, book: ReservationBook, registry: EndpointRegistry): KnownEndpoint {
  return (containerId) => {
    const r = book.get(containerId);
    const address = r?.ipv4 ?? r?.ipv6;
    const ep = address ? registry.findByAddress(address) : undefined;
    if (!r || !ep) return undefined;
    const record: EndpointRecord = {
      host,
      orchestrator: 'docker',
      workloadId: containerId,
      endpointId: ep.endpointId,
      ifName: ep.interfaceName,
      mac: ep.mac,
      ipv4Nets: ep.ipv4 ? [`${ep.ipv4}/32`] : [],
      ipv6Nets: ep.ipv6 ? [`${ep.ipv6}/128`] : [],
      profiles: r.profiles,
      state: 'active',
    };
    return record;
  };
}
