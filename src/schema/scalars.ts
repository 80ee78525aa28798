import { GraphQLError, Kind } from 'graphql';
import { builder } from './builder.js';

builder.scalarType('DateTime', {
  description: 'A point in time, as an ISO 8601 string in UTC (for example "2026-11-23T12:00:00.000Z").',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDate(value),
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('DateTime must be an ISO 8601 string');
    return parseDate(ast.value);
  },
});

function parseDate(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime must be an ISO 8601 string');
  return date;
}

builder.scalarType('File', {
  description: 'A file sent with the GraphQL multipart request spec (multipart/form-data: operations, map, files).',
  serialize: () => {
    throw new GraphQLError('File is an input-only scalar');
  },
  parseValue: (value) => {
    // Duck-typed: yoga hands over its fetch implementation's File, not necessarily Node's class.
    const v = value as Partial<File> | null;
    if (v && typeof v.arrayBuffer === 'function' && typeof v.name === 'string') return value as File;
    throw new GraphQLError('File must be sent as a multipart upload');
  },
});
