"""Adapters for agent frameworks, one module per framework, each behind its own extra.

Import the one you use: `codemode.integrations.pydantic_ai` (`pip install codemode[pydantic-ai]`),
`codemode.integrations.openai_agents` (`codemode[openai-agents]`) or `codemode.integrations.langchain`
(`codemode[langchain]`, with LangGraph for interrupts). This package imports none of them.
"""
