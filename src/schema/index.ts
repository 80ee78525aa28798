import { builder } from './builder.js';
import './scalars.js';
import './model.js';
import './job.js';
import './generation.js';
import './webhook.js';
import './viewer.js';

builder.queryType({ description: 'Reads: jobs and the model catalogue.' });
builder.mutationType({ description: 'Writes: one mutation per generation mode, and cancelJob.' });
builder.subscriptionType({ description: 'Live updates over graphql-ws on the same path as HTTP.' });

// Unsorted: the SDL keeps the order of the code, so JobStatus reads PENDING → CANCELED as in the contract.
export const schema = builder.toSchema({ sortSchema: false });
