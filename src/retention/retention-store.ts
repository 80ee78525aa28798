/** A finished job past retention, with every image name to remove with it. */
export interface ExpiredJob {
  id: string;
  /** The images it references and any others noted for it (written by an earlier, failed attempt). */
  images: string[];
}

/**
 * What the retention sweep needs of the database, apart from the JobStore's everyday methods:
 * finding what is old and deleting it. SqliteRetentionStore is the one for the embedded mode;
 * a Postgres store implements the same (with the same transaction boundaries).
 */
export interface RetentionStore {
  /** Finished jobs (SUCCESS, FAILURE, CANCELED) that ended before cutoff, oldest first. */
  expiredJobs(cutoff: Date, limit: number): Promise<ExpiredJob[]>;
  /**
   * Deletes these jobs with their webhook deliveries and noted images, in one transaction; only
   * those still finished before cutoff (never an unfinished one, whatever the caller passes).
   * Returns how many jobs were deleted.
   */
  deleteJobs(ids: readonly string[], cutoff: Date): Promise<number>;
  /**
   * Images noted (ImageLedger) before writtenBefore, in (writtenAt, name) order after the cursor,
   * with what became of each by its job.
   */
  notedImages(writtenBefore: Date, after: NotedImageCursor | null, limit: number): Promise<NotedImage[]>;
  /** Drops these names from the notes: referenced by their SUCCESS job, or their files are gone. */
  forgetImages(names: readonly string[]): Promise<void>;
}

/**
 * pending: its job has not finished (it may yet commit it). referenced: its job ended SUCCESS
 * and lists it (the job's record now answers for it). orphan: its job ended FAILURE or CANCELED,
 * ended SUCCESS without it, or is gone: no job will ever reference it.
 */
export type ImageFate = 'pending' | 'referenced' | 'orphan';

export interface NotedImage {
  name: string;
  writtenAt: Date;
  fate: ImageFate;
}

export type NotedImageCursor = Pick<NotedImage, 'name' | 'writtenAt'>;
