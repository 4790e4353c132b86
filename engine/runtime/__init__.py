"""The wiring under asyncio: the service's tasks and bounded shutdown, checkpointing,
alert delivery, logging, and the replay driver."""
