export { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from './harness.js';
export { RawClient, signFields, uniqueSalt } from './raw-client.js';
export { storeConformance, type StoreUnderTest } from './store-conformance.js';
export { runRtm, spawnServer, type RtmRun, type SpawnedServer } from './spawn.js';
export { busConformance, type BusUnderTest } from './bus-conformance.js';
export { startFaultyProxy, type FaultyProxy } from './faulty-proxy.js';
export { until } from './until.js';
export {
  rawWebSocket,
  recordingSocket,
  webSocketClientFrame,
  webSocketServerFrames,
  type RawWebSocket,
  type RecordingSocket,
} from './raw-socket.js';
export { prlimitMissing, whenAvailable } from './needs.js';
export { TLS_FIXTURES, type TlsFixture } from './tls-fixtures.js';
