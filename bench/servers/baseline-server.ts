/**
 * Baseline for the throughput ratio: a bare graphql-yoga server (createYoga + node:http) with one
 * trivial mutation, echo(n: Int!): Int!, and nothing else: no auth, no store, no engine.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';
import { cpuSample, serveIpc } from '../lib/child.js';

const yoga = createYoga({
  schema: createSchema({
    typeDefs: /* GraphQL */ `
      type Query {
        ok: Boolean!
      }
      type Mutation {
        echo(n: Int!): Int!
      }
    `,
    resolvers: {
      Query: { ok: () => true },
      Mutation: { echo: (_: unknown, { n }: { n: number }) => n },
    },
  }),
  graphqlEndpoint: '/graphql',
  landingPage: false,
  graphiql: false,
  logging: false,
});

const server = createServer(yoga);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;

serveIpc({ cpu: () => cpuSample() }, async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
