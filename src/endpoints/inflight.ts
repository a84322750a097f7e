/**
 * Reservations whose create request is still on its way through dockerd.
 * The reconciler must not collect them: they have no container yet, by
 * design, for as long as dockerd takes to answer.
 */
export class InflightHandles {
  private readonly handles = new Set<string>();

  add(handle: string): void {
    this.handles.add(handle);
  }

  delete(handle: string): void {
    this.handles.delete(handle);
  }

  has(handle: string): boolean {
    return this.handles.has(handle);
  }
}
