import { createRegistry, toBinary, type DescFile, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceRouter } from "./grpc-server.js";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest;
type ResponseBody = v1.ServerReflectionResponse["messageResponse"];

// gRPC status codes used inside reflection's ErrorResponse.
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/**
 * gRPC server reflection (v1 and v1alpha), so stock tools such as `buf curl --reflect` and
 * grpcurl can call every service with no .proto files at hand. The descriptors come from the
 * generated code itself, so they cannot drift from what the server speaks.
 */
export function registerReflection(router: ServiceRouter, files: DescFile[], serviceNames: string[]): void {
  const all = withDependencies(files);
  const known: Known = { registry: createRegistry(...all), files: new Map(all.map((f) => [f.name, f])) };
  const answer = (req: Request): ResponseBody => respond(known, serviceNames, req);
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(req) };
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // v1alpha's messages are field-for-field identical to v1's.
        const body = answer(req as unknown as Request) as unknown as v1alpha.ServerReflectionResponse["messageResponse"];
        yield { validHost: req.host, originalRequest: req, messageResponse: body };
      }
    },
  });
}

function withDependencies(files: DescFile[]): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    for (const dep of f.dependencies) visit(dep);
    seen.set(f.name, f);
  };
  files.forEach(visit);
  return [...seen.values()];
}

interface Known {
  registry: Registry;
  files: Map<string, DescFile>;
}

function respond({ registry, files }: Known, serviceNames: string[], req: Request): ResponseBody {
  const m = req.messageRequest;
  switch (m.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { $typeName: "grpc.reflection.v1.ListServiceResponse", service: serviceNames.map((name) => ({ $typeName: "grpc.reflection.v1.ServiceResponse", name })) },
      };
    case "fileByFilename": {
      const file = files.get(m.value);
      return file ? fileResponse(file) : error(NOT_FOUND, `file "${m.value}" not found`);
    }
    case "fileContainingSymbol": {
      const file = fileOfSymbol(registry, m.value);
      return file ? fileResponse(file) : error(NOT_FOUND, `symbol "${m.value}" not found`);
    }
    case "fileContainingExtension":
      return error(NOT_FOUND, `extension ${m.value.extensionNumber} of "${m.value.containingType}" not found`);
    case "allExtensionNumbersOfType": {
      const message = registry.getMessage(m.value);
      if (!message) return error(NOT_FOUND, `type "${m.value}" not found`);
      return {
        case: "allExtensionNumbersResponse",
        value: { $typeName: "grpc.reflection.v1.ExtensionNumberResponse", baseTypeName: m.value, extensionNumber: [] },
      };
    }
    default:
      return error(UNIMPLEMENTED, "unsupported reflection request");
  }
}

function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
  const desc = registry.get(name);
  if (desc) return desc.file;
  // A method is named "pkg.Service.Method": look up its service.
  const dot = name.lastIndexOf(".");
  if (dot > 0) {
    const service = registry.getService(name.slice(0, dot));
    if (service?.methods.some((mm) => mm.name === name.slice(dot + 1))) return service.file;
  }
  return undefined;
}

function fileResponse(file: DescFile): ResponseBody {
  // Send the file with its transitive dependencies, dependencies first, as grpc-go does.
  const files = withDependencies([file]);
  return {
    case: "fileDescriptorResponse",
    value: {
      $typeName: "grpc.reflection.v1.FileDescriptorResponse",
      fileDescriptorProto: files.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)),
    },
  };
}

function error(errorCode: number, errorMessage: string): ResponseBody {
  return { case: "errorResponse", value: { $typeName: "grpc.reflection.v1.ErrorResponse", errorCode, errorMessage } };
}
