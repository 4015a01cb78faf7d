"""The hand-written ChittyAuth client."""
