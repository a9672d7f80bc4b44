// Sends one shopper's calls through a real Segment-protocol Node client to a running cartback:
//   node send.mjs segment|rudderstack HOST WRITE_KEY SUFFIX
// Exits non-zero if the client reported any error. Message ids are fixed so the test can read each back.
import { Analytics as SegmentAnalytics } from '@segment/analytics-node'
import RudderAnalytics from '@rudderstack/rudder-sdk-node'

const [client, host, writeKey, suffix] = process.argv.slice(2)
const errors = []
const userId = `node_${client}_${suffix}`
const calls = [
  ['identify', { userId, traits: { email: `${userId}@example.com`, firstName: 'Noor', plan: 'pro' } }],
  ['track', {
    userId,
    event: 'Checkout Started',
    properties: {
      checkout_id: `chk_${userId}`,
      value: 64.5,
      currency: 'EUR',
      products: [{ product_id: 'tee', name: 'Logo tee', price: 25, quantity: 2 }, { product_id: 'mug', name: 'Mug', price: 14.5 }],
      checkout_url: `https://shop.example.com/checkout/${userId}`,
    },
  }],
  ['page', { userId, name: 'Pricing', category: 'Docs', properties: { path: '/pricing' } }],
  ['group', { userId, groupId: 'acme', traits: { name: 'Acme' } }],
].map(([type, message]) => [type, { ...message, messageId: `${userId}_${type}` }])

if (client === 'segment') {
  const analytics = new SegmentAnalytics({ writeKey, host, flushAt: 10, maxRetries: 0 })
  analytics.on('error', (err) => errors.push(String(err && (err.reason || err.message || err.code))))
  for (const [type, message] of calls) analytics[type](message)
  await analytics.closeAndFlush({ timeout: 20000 })
} else if (client === 'rudderstack') {
  // Its defaults: gzip on, and its HTTP library labels the gzipped JSON form-urlencoded.
  const analytics = new RudderAnalytics(writeKey, {
    dataPlaneUrl: host,
    flushAt: 10,
    retryCount: 0,
    errorHandler: (err) => errors.push(String(err && err.message)),
  })
  for (const [type, message] of calls) analytics[type](message)
  await analytics.flush()
} else {
  throw new Error(`unknown client ${client}`)
}
console.log(JSON.stringify({ client, userId, errors }))
process.exit(errors.length ? 1 : 0)
