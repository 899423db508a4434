// Placeholder: the control protocol.
