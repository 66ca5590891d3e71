// The TypeScript weaviate-client 3.x against a searchd started by tests/test_grpc_typescript.py.
// Prints one JSON line of what it found; the Python test compares it with the same queries over GraphQL.
import weaviate from 'weaviate-client';

const [httpPort, grpcPort] = process.argv.slice(2).map(Number);
const client = await weaviate.connectToCustom({ httpHost: '127.0.0.1', httpPort, grpcHost: '127.0.0.1', grpcPort });
try {
  const scratch = client.collections.get('Scratch');
  const inserted = await scratch.data.insertMany([
    { title: 'typescript red apples', wordCount: 3 },
    { title: 'typescript green pears', wordCount: 7 },
    { title: 'typescript bad', wordCount: 'many' },
  ]);
  const articles = client.collections.get('Article');
  const vector = JSON.parse(process.env.QUERY_VECTOR);
  const near = await articles.query.nearVector(vector, { limit: 3, returnMetadata: ['distance'] });
  const hybrid = await articles.query.hybrid('fruit apples', { alpha: 0.5, limit: 4 });
  const aggregate = await articles.aggregate.overAll({ returnMetrics: articles.metrics.aggregate('wordCount').integer(['sum']) });
  console.log(JSON.stringify({
    ready: await client.isReady(),
    insertErrors: Object.fromEntries(Object.entries(inserted.errors).map(([i, e]) => [i, e.message])),
    insertedIds: Object.values(inserted.uuids),
    nearVector: near.objects.map((o) => [o.uuid, o.metadata.distance]),
    hybrid: hybrid.objects.map((o) => o.uuid),
    total: aggregate.totalCount,
    wordCountSum: aggregate.properties.wordCount.sum,
  }));
} finally {
  await client.close();
}
