//! Examples and tests of `reqwest-llm-retry` inside rig and async-openai; nothing to import.
