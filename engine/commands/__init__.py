"""One module per `burnrate` command; `common` holds exit codes, signal handling and
error printing shared by all of them. `engine.cli` only builds the parser."""
