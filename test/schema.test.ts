import { readFileSync } from 'node:fs';
import { isEnumType, isInputObjectType, isInterfaceType, isObjectType, printSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/schema/index.js';

describe('the GraphQL schema', () => {
  it('matches the committed schema/schema.graphql (run npm run generate after changing it)', () => {
    const committed = readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8');
    expect(`${printSchema(schema)}\n`).toBe(committed);
  });

  it('documents every type, field, argument and enum value, so GraphiQL is the API reference', () => {
    const missing: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (type.name.startsWith('__') || ['String', 'Int', 'Float', 'Boolean', 'ID'].includes(type.name)) continue;
      if (!type.description) missing.push(type.name);
      if (isObjectType(type) || isInterfaceType(type) || isInputObjectType(type)) {
        for (const field of Object.values(type.getFields())) {
          if (!field.description) missing.push(`${type.name}.${field.name}`);
          for (const arg of 'args' in field ? field.args : []) {
            if (!arg.description) missing.push(`${type.name}.${field.name}(${arg.name})`);
          }
        }
      }
      if (isEnumType(type)) {
        for (const value of type.getValues()) if (!value.description) missing.push(`${type.name}.${value.name}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('uses the contract names', () => {
    const mutation = schema.getMutationType()!.getFields();
    expect(Object.keys(mutation)).toEqual(expect.arrayContaining(['text2image', 'image2image', 'inpainting', 'cancelJob']));
    expect(mutation.text2image!.args[0]!.type.toString()).toBe('Text2ImageInput!');
    expect(mutation.image2image!.args[0]!.type.toString()).toBe('Image2ImageInput!');
    expect(mutation.inpainting!.args[0]!.type.toString()).toBe('InpaintingInput!');
    const inpaint = (schema.getType('InpaintingInput') as import('graphql').GraphQLInputObjectType).getFields();
    for (const name of [
      'modelId',
      'prompt',
      'negativePrompt',
      'numInferenceSteps',
      'strength',
      'samples',
      'guidanceScale',
      'width',
      'height',
      'seed',
      'embeddings',
      'safetyChecker',
      'refiner',
      'initImage',
      'maskImage',
    ]) {
      expect(inpaint[name], name).toBeDefined();
    }
    expect(inpaint.embeddings!.type.toString()).toBe('[ID!]');
    const status = schema.getType('JobStatus');
    expect(isEnumType(status) && status.getValues().map((v) => v.name)).toEqual([
      'PENDING',
      'PROCESSING',
      'SUCCESS',
      'FAILURE',
      'CANCELED',
    ]);
    const job = (schema.getType('Job') as import('graphql').GraphQLObjectType).getFields();
    for (const name of ['id', 'mode', 'status', 'progress', 'downloadUrls', 'error', 'seed', 'createdAt']) {
      expect(job[name], name).toBeDefined();
    }
    expect(Object.keys(schema.getQueryType()!.getFields())).toEqual(expect.arrayContaining(['job', 'jobs', 'models']));
    expect(Object.keys(schema.getSubscriptionType()!.getFields())).toContain('jobStatus');
  });
});
