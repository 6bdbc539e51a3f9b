"""One construct per module; the stack only composes them."""
