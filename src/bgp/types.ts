// What the BIRD renderer needs to know, as plain values. The node builds it
// from the datastore syncer's snapshot (hosts, pools, /calico/v1/config/*)
// and from IPAM (the blocks affine to this host); the renderer is a pure
// function of it (./render.ts).
import type { Family } from '../address/cidr';
import type { BgpPeer, Host } from '../datastore/host-store';
import type { IpipMode } from '../datastore/pool-store';

export type { BgpPeer };

/** A registered host: its BGP address(es) (bird_ip, bird6_ip) and optional AS. */
export type BgpHost = Host;

/** Global BGP configuration (/calico/v1/config/bgp_*). */
export interface BgpConfig {
  /** Global AS; undefined means DEFAULT_AS (64511). */
  as?: string;
  /**
   * The node-to-node mesh: true or false when set (`calicoctl bgp node-mesh
   * on|off`); undefined (the key absent) means on unless route reflectors or
   * global peers are configured, in which case hosts peer with those instead.
   */
  nodeMesh?: boolean;
  /** Route reflector addresses (bgp_peer_rr_v4/v6); they share the global AS. */
  routeReflectors: string[];
  /** Global peers (bgp_peer_v4/v6). */
  globalPeers: BgpPeer[];
  /** TCP MD5 password of every mesh session (bgp_node_mesh_password); absent = none. */
  meshPassword?: string;
  /** TCP MD5 passwords of route reflectors (bgp_rr_password_v4/v6), by canonical address. */
  rrPasswords?: Record<string, string>;
}

/**
 * The routes one host may announce: the blocks affine to it (and anything
 * inside them) and the single addresses it borrowed from blocks not affine
 * to it (/32, /128). From the blocks in the datastore (./routes-owned.ts).
 */
export interface HostRoutes {
  blocks: string[];
  borrowed: string[];
}

export interface BirdInput {
  /** This host's name (its registration must be among `hosts`). */
  hostname: string;
  /** Every registered host, this one included. */
  hosts: BgpHost[];
  /**
   * IP pools: only routes inside them are exported and imported. A pool with
   * an IP-in-IP mode has its tunnelled routes put in the kernel by the node
   * (src/tunnel), so BIRD keeps those out of the kernel.
   */
  pools: { cidr: string; family: Family; ipipMode?: IpipMode }[];
  /** The subnet of the interface holding this host's --ip (cross-subnet IP-in-IP); undefined: unknown, every host counts as remote. */
  localSubnet?: string;
  config: BgpConfig;
  /** This host's peers (host/<h>/bgp_peer_v4/v6). */
  nodePeers: BgpPeer[];
  /**
   * Blocks affine to this host (/26, /122): each is announced as one
   * aggregate backed by a blackhole route. Addresses this host borrowed from
   * other hosts' blocks need no listing: their kernel routes to the local
   * cali interfaces are learned and announced as /32 (/128).
   */
  affineBlocks: string[];
  /**
   * What each host holds, by host name (every block in the datastore, ./routes-owned.ts).
   * A mesh session imports only the peer host's own routes; a host missing
   * here holds nothing, so nothing is imported from it.
   */
  hostRoutes: Readonly<Record<string, HostRoutes>>;
}

/** The kind of a BGP session, from its protocol name (see protocolName). */
export type SessionType = 'mesh' | 'rr' | 'global' | 'node';
