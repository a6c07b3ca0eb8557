export { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from './harness.js';
export { RawClient, signFields } from './raw-client.js';
