import SchemaBuilder from '@pothos/core';
import type { GraphQLContext } from './context.js';

/** Builder configuration only: the context type and scalars. Types live one file each beside it. */
export interface SchemaTypes {
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  DefaultInputFieldRequiredness: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    File: { Input: File; Output: never };
  };
}

export type BuilderTypes = PothosSchemaTypes.ExtendDefaultTypes<SchemaTypes>;

export const builder = new SchemaBuilder<SchemaTypes>({
  defaultFieldNullability: false,
});
