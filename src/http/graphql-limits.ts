import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { GraphQLError, Kind, type ASTVisitor, type FragmentDefinitionNode, type SelectionSetNode, type ValidationContext } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLLimits } from '../config.js';

/**
 * Limits on the shape of an operation, checked at parse and validation time (before any
 * resolver runs), over HTTP and WebSocket alike. Introspection has its own depth limit instead
 * of the operation limits: GraphiQL and codegen need the standard query (15 levels deep, through
 * the nested ofType of type references), which the ordinary depth and cost limits would refuse.
 */
export function graphqlLimitPlugins(limits: GraphQLLimits): Plugin[] {
  return [
    maxTokensPlugin({ n: limits.maxTokens }),
    maxDepthPlugin({ n: limits.maxDepth, ignoreIntrospection: true, flattenFragments: true }),
    maxAliasesPlugin({ n: limits.maxAliases }),
    costLimitPlugin({ maxCost: limits.maxCost, ignoreIntrospection: true }),
    introspectionDepthPlugin(limits.maxIntrospectionDepth),
  ] as Plugin[];
}

function introspectionDepthPlugin(maxDepth: number): Plugin {
  const rule = (context: ValidationContext): ASTVisitor => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    return {
      Field(node) {
        if (node.name.value !== '__schema' && node.name.value !== '__type') return;
        const depth = 1 + selectionDepth(node.selectionSet, fragments, new Set());
        if (depth > maxDepth)
          context.reportError(
            new GraphQLError(
              `introspection nested ${depth} levels deep; at most ${maxDepth} are allowed (the standard introspection query needs 15)`,
              {
                nodes: [node],
                extensions: { code: 'INTROSPECTION_TOO_DEEP' },
              },
            ),
          );
        return false; // measured whole; nested __type fields are part of this one
      },
    };
  };
  return { onValidate: ({ addValidationRule }) => addValidationRule(rule) };
}

/** Fields nested under a selection set, fragments expanded (a fragment already on the path counts as 0: validation refuses cycles). */
function selectionDepth(set: SelectionSetNode | undefined, fragments: Map<string, FragmentDefinitionNode>, path: Set<string>): number {
  if (!set) return 0;
  let deepest = 0;
  for (const s of set.selections) {
    let depth = 0;
    if (s.kind === Kind.FIELD) depth = 1 + selectionDepth(s.selectionSet, fragments, path);
    else if (s.kind === Kind.INLINE_FRAGMENT) depth = selectionDepth(s.selectionSet, fragments, path);
    else if (!path.has(s.name.value)) {
      path.add(s.name.value);
      depth = selectionDepth(fragments.get(s.name.value)?.selectionSet, fragments, path);
      path.delete(s.name.value);
    }
    deepest = Math.max(deepest, depth);
  }
  return deepest;
}
