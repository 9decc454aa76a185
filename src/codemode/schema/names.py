"""Names that are valid identifiers in both sandbox languages.

`sanitize_identifier` follows Cloudflare's code-mode sanitizer step by step,
with two deliberate deviations, because its result must be usable as-is in
Python *and* in JavaScript:

- `$` is not kept. It is legal in JavaScript but not in Python, so it is
  deleted like any other invalid character: `"@#$"` -> `"_"`, `"$jquery"` -> `"jquery"`.
- The reserved set is Cloudflare's JavaScript list plus every Python keyword
  (`keyword.kwlist`: `None`, `True`, `def`, `lambda`, `pass`, `not`, ...) and
  `__debug__`, which Python refuses as a binding name. Soft keywords (`match`,
  `case`, `type`, `_`) are ordinary names in Python, so they are left alone.
"""

from __future__ import annotations

import keyword
import re

__all__ = [
    "JAVASCRIPT_GLOBALS",
    "PYTHON_BUILTINS",
    "RESERVED_WORDS",
    "SANDBOX_GLOBALS",
    "sanitize_identifier",
    "to_pascal_case",
]

# Cloudflare's list, verbatim.
_JS_RESERVED = """
abstract arguments await boolean break byte case catch char class const continue debugger default delete do double
else enum eval export extends false final finally float for function goto if implements import in instanceof int
interface let long native new null package private protected public return short static super switch synchronized
this throw throws transient true try typeof undefined var void volatile while with yield
""".split()  # noqa: SIM905

RESERVED_WORDS: frozenset[str] = frozenset(_JS_RESERVED) | frozenset(keyword.kwlist) | {"__debug__"}

# The built-in names of Python (3.10 to 3.13, `site`'s `exit`/`help`/... included), written out so the
# set is the same whatever interpreter runs the host.
PYTHON_BUILTINS: frozenset[str] = frozenset(
    """
ArithmeticError AssertionError AttributeError BaseException BaseExceptionGroup BlockingIOError BrokenPipeError
BufferError BytesWarning ChildProcessError ConnectionAbortedError ConnectionError ConnectionRefusedError
ConnectionResetError DeprecationWarning EOFError Ellipsis EncodingWarning EnvironmentError Exception ExceptionGroup
False FileExistsError FileNotFoundError FloatingPointError FutureWarning GeneratorExit IOError ImportError
ImportWarning IndentationError IndexError InterruptedError IsADirectoryError KeyError KeyboardInterrupt LookupError
MemoryError ModuleNotFoundError NameError None NotADirectoryError NotImplemented NotImplementedError OSError
OverflowError PendingDeprecationWarning PermissionError ProcessLookupError PythonFinalizationError RecursionError
ReferenceError ResourceWarning RuntimeError RuntimeWarning StopAsyncIteration StopIteration SyntaxError
SyntaxWarning SystemError SystemExit TabError TimeoutError True TypeError UnboundLocalError UnicodeDecodeError
UnicodeEncodeError UnicodeError UnicodeTranslateError UnicodeWarning UserWarning ValueError Warning
ZeroDivisionError abs aiter all anext any ascii bin bool breakpoint bytearray bytes callable chr classmethod compile
complex copyright credits delattr dict dir divmod enumerate eval exec exit filter float format frozenset getattr
globals hasattr hash help hex id input int isinstance issubclass iter len license list locals map max memoryview
min next object oct open ord pow print property quit range repr reversed round set setattr slice sorted
staticmethod str sum super tuple type vars zip
""".split()  # noqa: SIM905
)

# The globals a JavaScript program sees in the Deno sandbox (ECMAScript, Web and Deno's own; what
# `Object.getOwnPropertyNames(globalThis)` lists), plus the names other runtimes use for the global
# object or the host. A connector is installed as a global, so it must not take one of these names.
JAVASCRIPT_GLOBALS: frozenset[str] = frozenset(
    """
AbortController AbortSignal AggregateError Array ArrayBuffer AsyncDisposableStack Atomics BigInt BigInt64Array
BigUint64Array Blob Boolean BroadcastChannel Buffer ByteLengthQueuingStrategy Cache CacheStorage CloseEvent
CompressionStream CountQueuingStrategy Crypto CryptoKey CustomEvent DOMException DOMMatrix DOMMatrixReadOnly
DOMPoint DOMPointReadOnly DOMQuad DOMRect DOMRectReadOnly DataView Date DecompressionStream Deno DisposableStack
Error ErrorEvent EvalError Event EventSource EventTarget File FileReader FinalizationRegistry Float16Array
Float32Array Float64Array FormData Function GPU GPUAdapter GPUAdapterInfo GPUBindGroup GPUBindGroupLayout GPUBuffer
GPUBufferUsage GPUCanvasContext GPUColorWrite GPUCommandBuffer GPUCommandEncoder GPUCompilationInfo
GPUCompilationMessage GPUComputePassEncoder GPUComputePipeline GPUDevice GPUDeviceLostInfo GPUError
GPUInternalError GPUMapMode GPUOutOfMemoryError GPUPipelineError GPUPipelineLayout GPUQuerySet GPUQueue
GPURenderBundle GPURenderBundleEncoder GPURenderPassEncoder GPURenderPipeline GPUSampler GPUShaderModule
GPUShaderStage GPUSupportedFeatures GPUSupportedLimits GPUTexture GPUTextureUsage GPUTextureView
GPUUncapturedErrorEvent GPUValidationError Headers ImageBitmap ImageBitmapRenderingContext ImageData Infinity
Int16Array Int32Array Int8Array Intl Iterator JSON Location Lock LockManager Map Math MessageChannel MessageEvent
MessagePort NaN Navigator NavigatorUAData Number Object OffscreenCanvas Performance PerformanceEntry PerformanceMark
PerformanceMeasure PerformanceObserver PerformanceObserverEntryList ProgressEvent Promise PromiseRejectionEvent
Proxy QuotaExceededError RangeError ReadableByteStreamController ReadableStream ReadableStreamBYOBReader
ReadableStreamBYOBRequest ReadableStreamDefaultController ReadableStreamDefaultReader ReferenceError Reflect RegExp
Request Response Set SharedArrayBuffer SharedWorker Storage String SubtleCrypto SuppressedError Symbol SyntaxError
Temporal TextDecoder TextDecoderStream TextEncoder TextEncoderStream TransformStream
TransformStreamDefaultController TypeError URIError URL URLPattern URLSearchParams Uint16Array Uint32Array
Uint8Array Uint8ClampedArray WeakMap WeakRef WeakSet WebAssembly WebSocket Window Worker WritableStream
WritableStreamDefaultController WritableStreamDefaultWriter alert atob btoa caches clearImmediate clearInterval
clearTimeout close closed confirm console createImageBitmap crypto decodeURI decodeURIComponent encodeURI
encodeURIComponent escape eval exports fetch global globalThis isFinite isNaN localStorage location module name
navigator onbeforeunload onerror onload onunhandledrejection onunload parseFloat parseInt performance process prompt
queueMicrotask reportError require self sessionStorage setImmediate setInterval setTimeout structuredClone
undefined unescape window
""".split()  # noqa: SIM905
)

# Every name a connector namespace would collide with in one of the sandbox languages.
SANDBOX_GLOBALS: frozenset[str] = PYTHON_BUILTINS | JAVASCRIPT_GLOBALS

_SEPARATORS = re.compile(r"[-.\s]")
_INVALID = re.compile(r"[^A-Za-z0-9_]")
_AFTER_UNDERSCORE = re.compile(r"_([A-Za-z])")


def sanitize_identifier(name: str) -> str:
    """Turn any tool or type name into an identifier valid in Python and JavaScript."""
    if not name:
        return "_"
    name = _INVALID.sub("", _SEPARATORS.sub("_", name))
    if not name:
        return "_"
    if name[0].isdigit():
        name = "_" + name
    if name in RESERVED_WORDS:
        name += "_"
    return name


def to_pascal_case(name: str) -> str:
    """PascalCase a sanitized name, as Cloudflare's code mode does: `get_item` -> `GetItem`, `_3drender` unchanged.

    Each letter after an `_` is uppercased and the `_` dropped; then a lowercase
    first character is uppercased. Underscores before digits stay, so the result
    never starts with a digit when the input did not.
    """
    name = _AFTER_UNDERSCORE.sub(lambda m: m.group(1).upper(), name)
    return name[:1].upper() + name[1:] if name[:1].islower() else name
