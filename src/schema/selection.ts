import { Kind, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';

/**
 * Whether the operation selects this path of fields below the resolver's field (through inline
 * fragments and named ones), e.g. ['progress', 'preview'] under jobStatus. Validation has
 * already refused fragment cycles.
 */
export function selects(info: GraphQLResolveInfo, path: readonly string[]): boolean {
  const within = (set: SelectionSetNode | undefined, rest: readonly string[]): boolean => {
    if (!set) return false;
    if (rest.length === 0) return true;
    return set.selections.some((s) => {
      if (s.kind === Kind.FIELD) return s.name.value === rest[0] && (rest.length === 1 || within(s.selectionSet, rest.slice(1)));
      if (s.kind === Kind.INLINE_FRAGMENT) return within(s.selectionSet, rest);
      return within(info.fragments[s.name.value]?.selectionSet, rest);
    });
  };
  return info.fieldNodes.some((node) => within(node.selectionSet, path));
}
