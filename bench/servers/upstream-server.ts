/**
 * The fake upstream (test/fixtures/fake-imagepipeline.ts, a labelled TEST FIXTURE that follows
 * the contract's REST protocol) in its own process, standing in for the remote image service:
 * its CPU is not charged to the server under test. UPSTREAM_HOLD=true keeps every job queued.
 */
import { FakeImagePipeline } from '../../test/fixtures/fake-imagepipeline.js';
import { cpuSample, serveIpc } from '../lib/child.js';

const upstream = new FakeImagePipeline();
upstream.behaviour.hold = process.env.UPSTREAM_HOLD !== 'false';
await upstream.start();

serveIpc(
  {
    cpu: () => cpuSample(),
    stats: () => {
      let statusCalls = 0;
      for (const job of upstream.jobs.values()) statusCalls += job.statusCalls;
      return { jobs: upstream.jobs.size, submits: upstream.submits, statusCalls };
    },
  },
  () => upstream.stop(),
);

process.stdout.write(`${JSON.stringify({ url: upstream.url, apiKey: upstream.apiKey, hold: upstream.behaviour.hold })}\n`);
