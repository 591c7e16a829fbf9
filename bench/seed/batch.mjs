// bench/seed/batch.mjs - the seed's batch consumer (the article's "Batch processing"
// example), in JavaScript: eachBatch with eachBatchAutoResolve = false parses the batch's
// messages, writes them with one bulk upsert (INSERT ... VALUES (...), (...) ON CONFLICT (id)
// DO UPDATE SET data = EXCLUDED.data), resolves the last offset and heartbeats; kafkajs
// commits the resolved offsets after each batch (autoCommit at its defaults). The article
// destructures { payload }, which kafkajs does not pass: this uses { batch, resolveOffset,
// heartbeat } and batch.messages, which it clearly means (bench/seed/README.md).
// SIGTERM disconnects and exits 0. Arguments: PEERS_DIR BOOTSTRAP TOPIC GROUP PG_URL TABLE
import { createRequire } from 'node:module';

const [dir, bootstrap, topic, group, pgUrl, table] = process.argv.slice(2);
const require = createRequire(`${dir}/`);
const { Kafka, logLevel } = require('kafkajs');
const pg = require('pg');

const kafka = new Kafka({ clientId: 'event-processor', brokers: [bootstrap], logLevel: logLevel.WARN });
const consumer = kafka.consumer({ groupId: group });
const db = new pg.Pool({ connectionString: pgUrl });

async function bulkInsert(batch) {
  // Use parameterized insert for efficiency
  const placeholders = batch.map((_, i) => `($${i * 2 + 1}, $${i * 2 + 2})`).join(',');
  const params = batch.flatMap(item => [item.id, JSON.stringify(item)]);

  await db.query(
    `INSERT INTO ${table} (id, data) VALUES ${placeholders}
     ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data`,
    params
  );
}

process.on('SIGTERM', async () => {
  await consumer.disconnect();
  await db.end();
  process.exit(0);
});
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });

// Batch processing (efficient, complex)
await consumer.run({
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
    const { messages } = batch;

    const items = messages.map(msg => JSON.parse(msg.value.toString()));

    // Process in bulk
    await bulkInsert(items);

    // Resolve all at once
    resolveOffset(messages[messages.length - 1].offset);

    // Send heartbeat for long-running batches
    await heartbeat();
  },
});
