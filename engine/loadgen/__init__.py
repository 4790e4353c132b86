"""The synthetic traffic behind `burnrate produce` and `burnrate demo`.

- `engine.loadgen.spec`: what a run looks like (`LoadSpec`), its incidents and their
  text grammar, and the parsers of the command-line spelling of both.
- `engine.loadgen.generator`: the events of a spec, reproducible slice by slice
  (`LoadGenerator`, `GeneratedEvents`, `Tally`).
- `engine.loadgen.wire`: generated events as Kafka record values in the wire format.

Nothing here does I/O or reads a clock; sending is `engine.adapters.kafka.producer`.
Import from the modules: this package re-exports nothing, so loading the spec and its
grammar does not load numpy.
"""
