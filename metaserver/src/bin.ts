#!/usr/bin/env node
import { closeOnSignal } from "@satchel/proto";
import { loadConfig } from "./config.js";
import { createContext } from "./context.js";
import { startMetaserver } from "./server.js";

const ctx = await createContext(loadConfig());
closeOnSignal(await startMetaserver(ctx), ctx.close);
