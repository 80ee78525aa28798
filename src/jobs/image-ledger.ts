/**
 * A record of every image written for a job, kept from before the job commits SUCCESS (images go
 * into the image store first, so SUCCESS always means they are there). An image whose job then
 * failed, was canceled, or crashed, is referenced by no job: the retention sweep finds those here
 * and removes them. The SQLite ledger lives with the retention store (retention/); a Postgres
 * store implements the same.
 */
export interface ImageLedger {
  /** Notes that these images were written for this job (committed before this resolves). */
  record(jobId: string, names: readonly string[]): Promise<void>;
}
