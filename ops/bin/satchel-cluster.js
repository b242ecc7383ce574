#!/usr/bin/env node
// Committed entry point, so npm can link it before the TypeScript build has run.
import "../dist/bin.js";
