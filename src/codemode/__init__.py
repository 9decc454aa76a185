"""codemode: one `codemode(code)` tool for LLM agents, a sandbox, and a durable runtime.

The model writes a short program; every connector call it makes is logged,
paused for approval where required, resumed by replay, rejectable and
roll-backable. This module is the whole public API.
"""

from codemode.connectors.base import Connector
from codemode.connectors.decorator import tool
from codemode.connectors.mcp import (
    McpConnection,
    McpConnectionError,
    McpConnector,
    McpTimeoutError,
    McpTool,
    McpToolError,
)
from codemode.connectors.openapi import (
    HttpOpenApiConnector,
    OpenApiConnector,
    OpenApiHttpError,
    OpenApiRequest,
)
from codemode.connectors.spec import ConnectorDescription, ToolContext, ToolSpec
from codemode.connectors.toolset import ExcludedToolsWarning, ToolArgumentsError, ToolsetConnector
from codemode.discovery import Description, SearchOutput, SearchResult
from codemode.errors import (
    CodemodeError,
    ConnectorUnavailableError,
    ExecutionNotFoundError,
    RollbackError,
    StoreConflictError,
    StoreConnectionError,
    StoreError,
)
from codemode.records import (
    DEFAULT_MAX_EXECUTIONS,
    DEFAULT_PAUSED_TTL,
    MAX_DURABLE_VALUE_BYTES,
    Decision,
    Execution,
    LogEntry,
    Outcome,
    PendingAction,
    RollbackReport,
    Snippet,
)
from codemode.runtime.runtime import Runtime
from codemode.runtime.sync import SyncRuntime
from codemode.runtime.tool import CodeTool
from codemode.sandbox.base import ExecuteResult, Executor, Host, Namespace, StopExecution, ToolError
from codemode.sandbox.deno import DenoExecutor
from codemode.sandbox.monty import MontyExecutor
from codemode.schema.names import sanitize_identifier
from codemode.store.base import Store
from codemode.store.postgres import PostgresStore, StoreChange
from codemode.store.sqlite import SqliteStore
from codemode.truncate import truncate_response, truncate_result

__all__ = [
    "DEFAULT_MAX_EXECUTIONS",
    "DEFAULT_PAUSED_TTL",
    "MAX_DURABLE_VALUE_BYTES",
    "CodeTool",
    "CodemodeError",
    "Connector",
    "ConnectorDescription",
    "ConnectorUnavailableError",
    "Decision",
    "DenoExecutor",
    "Description",
    "ExcludedToolsWarning",
    "ExecuteResult",
    "Execution",
    "ExecutionNotFoundError",
    "Executor",
    "Host",
    "HttpOpenApiConnector",
    "LogEntry",
    "McpConnection",
    "McpConnectionError",
    "McpConnector",
    "McpTimeoutError",
    "McpTool",
    "McpToolError",
    "MontyExecutor",
    "Namespace",
    "OpenApiConnector",
    "OpenApiHttpError",
    "OpenApiRequest",
    "Outcome",
    "PendingAction",
    "PostgresStore",
    "RollbackError",
    "RollbackReport",
    "Runtime",
    "SearchOutput",
    "SearchResult",
    "Snippet",
    "SqliteStore",
    "StopExecution",
    "Store",
    "StoreChange",
    "StoreConflictError",
    "StoreConnectionError",
    "StoreError",
    "SyncRuntime",
    "ToolArgumentsError",
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "ToolsetConnector",
    "sanitize_identifier",
    "tool",
    "truncate_response",
    "truncate_result",
]
