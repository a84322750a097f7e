// Imported first by main.ts. gRPC passes an etcd member's IP address as the
// TLS server name, and Node warns about that (DEP0123, RFC 6066) on stderr
// once per process: noise in every `calicoctl --etcd-endpoints https://10...`
// answer, about a library's internals, that the user can do nothing about.
// Every other warning still prints.
const emit = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === 'DEP0123') return;
  (emit as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

export {};
