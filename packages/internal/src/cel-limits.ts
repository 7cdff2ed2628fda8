// Bounds on CEL expressions, so one tenant's expression cannot stall a Kafka partition: CEL has no
// loops, but its comprehensions (`all`, `exists`, `map`, `filter`) walk lists, and nested ones
// multiply. An expression is refused (at sync, or when a step is planned) when its parsed tree is
// too large or nests comprehensions too deep; evaluation time is then bounded by the event's size
// (512 KiB at most) times these limits.

/** Most characters of an expression. */
export const CEL_MAX_CHARS = 4_096;
/** Most nodes of its parsed tree. */
export const CEL_MAX_NODES = 1_000;
/** Most comprehensions nested inside one another. */
export const CEL_MAX_NESTING = 2;

/**
 * What makes a parsed CEL expression (the `expr` of @bufbuild/cel's `parse`) too costly, or null.
 * Walks the tree generically: any object with `$typeName: "cel.expr.Expr"` is a node.
 */
export function celComplexityProblem(source: string, parsedExpr: unknown): string | null {
  if (source.length > CEL_MAX_CHARS) return `is longer than ${CEL_MAX_CHARS} characters`;
  let nodes = 0;
  let deepest = 0;
  // Iterative: a long chain like `a+b+c+...` is a deep tree, too deep for recursion.
  const stack: Array<{ value: unknown; depth: number }> = [{ value: parsedExpr, depth: 0 }];
  while (stack.length > 0 && nodes <= CEL_MAX_NODES) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    if (Array.isArray(value)) {
      for (const v of value) stack.push({ value: v, depth });
      continue;
    }
    if (!value || typeof value !== "object") continue;
    const obj = value as Record<string, unknown>;
    let d = depth;
    if (obj.$typeName === "cel.expr.Expr") {
      nodes++;
      if ((obj.exprKind as { case?: string } | undefined)?.case === "comprehensionExpr") d++;
      deepest = Math.max(deepest, d);
    }
    for (const [k, v] of Object.entries(obj)) if (k !== "$typeName") stack.push({ value: v, depth: d });
  }
  if (nodes > CEL_MAX_NODES) return `has more than ${CEL_MAX_NODES} terms`;
  if (deepest > CEL_MAX_NESTING) {
    return `nests ${deepest} comprehensions (all/exists/map/filter); at most ${CEL_MAX_NESTING} are allowed`;
  }
  return null;
}
