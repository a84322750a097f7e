import v8 from 'node:v8';

/**
 * One V8 setting for the long-running node, set before anything else loads.
 *
 * The proxy once read every client upload into a new buffer. In a process
 * the node's size, V8's incremental-marking *task* then started a full
 * mark-compact every ~25 MiB of a `docker cp` in, far below the heap's limit
 * (`--trace-incremental-marking`: "Start (task)", 23 MB of 47 MB used), and
 * the upload ran at 0.6x of a raw relay. Plain client sockets now read into a
 * ring of reused buffers (src/proxy/client-reads.ts), so an upload allocates
 * nothing per read; TLS clients still get a fresh buffer per read, and so does
 * anything else that streams through the node. Without the task, marking
 * starts at the allocation limit as usual and such a transfer costs a single
 * mark-compact (bench/proxy, README).
 */
v8.setFlagsFromString('--no-incremental-marking-task');
