/** LocalBus (the single-node default) against the shared Bus conformance suite. */
import { busConformance } from '@rtm/testkit';
import { LocalBus } from '../src/bus/local.js';

busConformance('local', async () => ({ buses: [new LocalBus()], cleanup: async () => {} }));
