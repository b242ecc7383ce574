#!/usr/bin/env node
import { closeOnSignal } from "@satchel/proto";
import { loadConfig } from "./config.js";
import { createContext } from "./context.js";
import { startNotifyserver } from "./server.js";

const ctx = await createContext(loadConfig());
closeOnSignal(await startNotifyserver(ctx), ctx.close);
