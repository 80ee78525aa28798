import { spawn, type ChildProcess } from 'node:child_process';

/** The real entry point (npm start's src/main.ts) run as a separate process, as operators run it. */
export interface ServerProcess {
  child: ChildProcess;
  /** The base URL, once the start-up line is printed. */
  url: Promise<string>;
  exited: Promise<number | null>;
  /** Everything it printed so far, stdout and stderr together. */
  output(): string;
  /** The API key printed on a first start, if one was. */
  printedKey(): string | undefined;
}

export function startServerProcess(env: Record<string, string>, startTimeoutMs = 30_000): ServerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start-up line in: ${output}`)), startTimeoutMs);
    const check = () => {
      const match = /GraphQL API and GraphiQL at (http:\/\/\S+)\/graphql/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening: ${output}`));
    });
  });
  url.catch(() => {}); // callers that never await it must not see an unhandled rejection
  return {
    child,
    url,
    exited,
    output: () => output,
    printedKey: () => output.split('\n').find((l) => /^sdk_[A-Za-z0-9_-]{43}$/.test(l)),
  };
}
