// Lint Neo4j-dialect Cypher with Neo4j's own language support.
// Input (stdin): JSON [{"name": "...", "text": "...", "params": ["rows", ...]}]
// Output (stdout): JSON [{"name": "...", "errors": [{"message", "line", "col"}], "warnings": [...]}]
import { lintCypherQuery } from '@neo4j-cypher/language-support';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const files = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const out = [];
for (const f of files) {
  const parameters = Object.fromEntries(f.params.map((p) => [p, null]));
  const schema = {
    labels: ['Concept', 'Study', 'ImageFinding', 'Finding', 'Diagnosis', 'KgragMeta'],
    relationshipTypes: ['CAUSES', 'ASSERTS'],
    parameters,
  };
  const { diagnostics } = lintCypherQuery(f.text, schema);
  const fmt = (d) => ({ message: d.message, line: d.range.start.line + 1, col: d.range.start.character + 1 });
  out.push({
    name: f.name,
    errors: diagnostics.filter((d) => d.severity === 1).map(fmt),
    warnings: diagnostics.filter((d) => d.severity !== 1).map(fmt),
  });
}
process.stdout.write(JSON.stringify(out));
