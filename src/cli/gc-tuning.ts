import v8 from 'node:v8';

/**
 * One V8 setting for the long-running node, set before anything else loads.
 *
 * The proxy's splice reads every client upload into a new buffer (node's
 * server sockets cannot read into one buffer, as dockerd's side does). In a
 * process the node's size, V8's incremental-marking *task* then started a
 * full mark-compact every ~25 MiB of a `docker cp` in, far below the heap's
 * limit (`--trace-incremental-marking`: "Start (task)", 23 MB of 47 MB used),
 * and the upload ran at 0.6x of a raw relay. Without the task, marking starts
 * at the allocation limit as usual, the upload runs at the relay's speed and
 * the process does a single mark-compact per transfer, given that a paused
 * client buffers one read at most (SPLICE_CHUNK; bench/proxy, README).
 */
v8.setFlagsFromString('--no-incremental-marking-task');
