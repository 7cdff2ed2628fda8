import { parse } from "@bufbuild/cel";
import { describe, expect, it } from "vitest";
import { CEL_MAX_CHARS, celComplexityProblem } from "./cel-limits.js";

const problem = (source: string) => celComplexityProblem(source, parse(source));

describe("celComplexityProblem", () => {
  it("accepts ordinary expressions, including two nested comprehensions", () => {
    expect(problem("event.data.total > 10 && async.data.id == event.data.id")).toBeNull();
    expect(problem("event.data.items.exists(i, i.tags.all(t, t != 'x'))")).toBeNull();
  });

  it("refuses deeper nesting, too many terms and too many characters", () => {
    expect(problem("a.all(x, x.all(y, y.all(z, z)))")).toContain("nests 3 comprehensions");
    // Under the character limit, but 1,000+ terms: `a[0]+a[1]+...` is 3 nodes per 5 characters.
    const wide = Array.from({ length: 500 }, () => "a+b").join("+");
    expect(problem(wide)).toBe("has more than 1000 terms");
    expect(celComplexityProblem("x".repeat(CEL_MAX_CHARS + 1), {})).toContain("longer than");
  });
});
