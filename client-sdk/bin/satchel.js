#!/usr/bin/env node
// Committed entry point, so npm can link it before the TypeScript build has run.
import "../dist/cli/bin.js";
