// The GraphQL document of a search, and the same query as curl and as weaviate-client Python.

export class Enum {
  constructor(name) {
    this.name = name;
  }
}

export class Variable {
  constructor(name) {
    this.name = name;
  }
}

// A GraphQL literal: JSON's string escapes are GraphQL's, keys are bare names, enums bare words.
export function literal(value) {
  if (value instanceof Enum) return value.name;
  if (value instanceof Variable) return `$${value.name}`;
  if (Array.isArray(value)) return `[${value.map(literal).join(", ")}]`;
  if (value && typeof value === "object") {
    const fields = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${fields.map(([k, v]) => `${k}: ${literal(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

const VALUE_KEY = { TEXT: "valueText", "TEXT[]": "valueText", INT: "valueInt", "INT[]": "valueInt", NUMBER: "valueNumber", "NUMBER[]": "valueNumber", BOOLEAN: "valueBoolean", "BOOLEAN[]": "valueBoolean", DATE: "valueDate", "DATE[]": "valueDate", UUID: "valueText", "UUID[]": "valueText" };
const LIST_OPERATORS = new Set(["ContainsAny", "ContainsAll"]);

export function operatorsFor(type) {
  const base = type.replace("[]", "");
  const list = type.endsWith("[]") ? ["ContainsAny", "ContainsAll"] : [];
  if (base === "TEXT" || base === "UUID") return ["Equal", "NotEqual", "Like", ...list, "IsNull"];
  if (base === "BOOLEAN") return ["Equal", "NotEqual", ...list, "IsNull"];
  return ["Equal", "NotEqual", "GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual", ...list, "IsNull"];
}

function typedValue(type, raw) {
  const base = type.replace("[]", "");
  if (base === "INT") {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`'${raw}' is not a whole number`);
    return Number(raw);
  }
  if (base === "NUMBER") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) throw new Error(`'${raw}' is not a number`);
    return n;
  }
  if (base === "BOOLEAN") {
    if (!["true", "false"].includes(raw.trim())) throw new Error(`'${raw}' is not true or false`);
    return raw.trim() === "true";
  }
  return raw;
}

// One condition: {path, operator, type, value (the text typed)}.
export function whereOperand(condition) {
  const operand = { path: [condition.path], operator: new Enum(condition.operator) };
  if (condition.operator === "IsNull") {
    operand.valueBoolean = condition.value.trim() !== "false";
    return operand;
  }
  const key = VALUE_KEY[condition.type] || "valueText";
  if (LIST_OPERATORS.has(condition.operator)) {
    operand[key] = condition.value.split(",").map((v) => v.trim()).filter(Boolean).map((v) => typedValue(condition.type, v));
  } else {
    operand[key] = typedValue(condition.type, condition.value);
  }
  return operand;
}

export function whereFilter(conditions, combine) {
  if (!conditions.length) return undefined;
  const operands = conditions.map(whereOperand);
  return operands.length === 1 ? operands[0] : { operator: new Enum(combine), operands };
}

const ADDITIONAL = {
  nearText: "id distance",
  nearImage: "id distance",
  nearObject: "id distance",
  bm25: "id score explainScore",
  hybrid: "id score explainScore",
};

// search: {collection, kind, text, image, objectId, alpha, fusionType, targetVectors, conditions, combine, limit, fields}
// inline: the image written into the document (for tools without variables) instead of passed as $image.
export function searchDocument(search, inline = false) {
  const args = {};
  const targets = search.targetVectors.length ? search.targetVectors : undefined;
  if (search.kind === "nearText") args.nearText = { concepts: [search.text], targetVectors: targets };
  else if (search.kind === "nearImage") args.nearImage = { image: inline ? search.image : new Variable("image"), targetVectors: targets };
  else if (search.kind === "nearObject") args.nearObject = { id: search.objectId, targetVectors: targets };
  else if (search.kind === "bm25") args.bm25 = { query: search.text };
  else if (search.kind === "hybrid") args.hybrid = { query: search.text, alpha: search.alpha, fusionType: new Enum(search.fusionType), targetVectors: targets };
  args.where = whereFilter(search.conditions, search.combine);
  args.limit = search.limit;
  const lines = Object.entries(args).filter(([, v]) => v !== undefined).map(([k, v]) => `      ${k}: ${literal(v)}`);
  const head = search.kind === "nearImage" && !inline ? "query Search($image: String!) {" : "{";
  const query = [
    head,
    "  Get {",
    `    ${search.collection}(`,
    ...lines,
    "    ) {",
    `      ${search.fields.join(" ")}`,
    `      _additional { ${ADDITIONAL[search.kind]} }`,
    "    }",
    "  }",
    "}",
  ].join("\n");
  const variables = search.kind === "nearImage" && !inline ? { image: search.image } : undefined;
  return { query, variables };
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

export function curlSnippet(origin, body, withKey) {
  const key = withKey ? ` \\\n  -H "Authorization: Bearer $SEARCHD_API_KEY"` : "";
  return `curl -s ${origin}/v1/graphql -H 'Content-Type: application/json'${key} \\\n  --data-binary ${shellQuote(JSON.stringify(body))}`;
}

function pythonString(text) {
  // A triple-quoted raw string holds any GraphQL document but one with ''' or a trailing backslash.
  return text.includes("'''") || text.endsWith("\\") ? JSON.stringify(text) : `r'''${text}'''`;
}

export function pythonSnippet(origin, inlineQuery, withKey, collection, grpcPort) {
  const url = new URL(origin);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const auth = withKey ? `\n    auth_credentials=Auth.api_key(os.environ["SEARCHD_API_KEY"]),` : "";
  const imports = withKey ? ["import os", "", "import weaviate", "from weaviate.classes.init import Auth"] : ["import weaviate"];
  return [
    ...imports,
    "",
    "client = weaviate.connect_to_custom(",
    `    http_host=${JSON.stringify(url.hostname)}, http_port=${port}, http_secure=${url.protocol === "https:" ? "True" : "False"},`,
    `    grpc_host=${JSON.stringify(url.hostname)}, grpc_port=${grpcPort || 50051}, grpc_secure=False,${auth}`,
    "    skip_init_checks=True,",
    ")",
    "try:",
    `    result = client.graphql_raw_query(${pythonString(inlineQuery)})`,
    `    for hit in result.get[${JSON.stringify(collection)}]:`,
    "        print(hit)",
    "finally:",
    "    client.close()",
    "",
  ].join("\n");
}
