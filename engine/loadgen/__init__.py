"""The synthetic traffic behind `burnrate produce` and `burnrate demo`.

- `engine.loadgen.spec`: what a run looks like (`LoadSpec`), its incidents and their
  text grammar, and the parsers of the command-line spelling of both.
- `engine.loadgen.generator`: the events of a spec, reproducible slice by slice
  (`LoadGenerator`, `GeneratedEvents`, `Tally`).
- `engine.loadgen.wire`: generated events as Kafka record values in the wire format.
- `engine.loadgen.publish`: a load run, paced to the wall clock or as fast as possible
  (`produce`, `ProduceProgress`, `ProduceSummary`); the Kafka side of it is
  `engine.adapters.kafka.producer`.

Only `publish` does I/O or reads a clock (through the Kafka adapter); the rest is pure.
Import from the modules: this package re-exports nothing, so loading the spec and its
grammar does not load numpy.
"""
