// Placeholder: the config file parser.
