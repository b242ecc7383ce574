#!/usr/bin/env node
import { closeOnSignal } from "@satchel/proto";
import { loadConfig } from "./config.js";
import { createContext } from "./context.js";
import { startBlockserver } from "./server.js";

const ctx = await createContext(loadConfig());
closeOnSignal(await startBlockserver(ctx), ctx.close);
