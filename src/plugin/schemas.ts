import { z } from 'zod';

// Request bodies of the libnetwork remote driver API, checked once at the
// edge. Unknown fields pass through: newer Docker versions add some.

const options = z.record(z.unknown()).nullish();
const id = z.string().min(1);

const ipamData = z
  .object({ AddressSpace: z.string().optional(), Pool: z.string().optional(), Gateway: z.string().optional() })
  .passthrough();

export const CreateNetworkRequest = z
  .object({
    NetworkID: id,
    Options: options,
    IPv4Data: z.array(ipamData).nullish(),
    IPv6Data: z.array(ipamData).nullish(),
  })
  .passthrough();

export const NetworkRequest = z.object({ NetworkID: id }).passthrough();

export const CreateEndpointRequest = z
  .object({
    NetworkID: id,
    EndpointID: id,
    Options: options,
    Interface: z
      .object({
        Address: z.string().optional(),
        AddressIPv6: z.string().optional(),
        MacAddress: z.string().optional(),
      })
      .passthrough()
      .nullish(),
  })
  .passthrough();

export const EndpointRequest = z.object({ NetworkID: id, EndpointID: id }).passthrough();

export const JoinRequest = z
  .object({ NetworkID: id, EndpointID: id, SandboxKey: z.string().optional(), Options: options })
  .passthrough();

export const RequestPoolRequest = z
  .object({
    AddressSpace: z.string().optional(),
    Pool: z.string().optional(),
    SubPool: z.string().optional(),
    Options: options,
    V6: z.boolean().optional(),
  })
  .passthrough();

export const ReleasePoolRequest = z.object({ PoolID: id }).passthrough();

export const RequestAddressRequest = z
  .object({ PoolID: id, Address: z.string().optional(), Options: options })
  .passthrough();

export const ReleaseAddressRequest = z.object({ PoolID: id, Address: z.string() }).passthrough();

/** Any body at all (Activate, capabilities, discovery). */
export const AnyRequest = z.unknown();

/** One line per problem, naming the field, for the `Err` Docker shows its client. */
export function describeZodError(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
}
