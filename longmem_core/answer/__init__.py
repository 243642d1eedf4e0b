"""Answer modes (answer): how what memory holds becomes an answer: passages read back (read_back), their best
sentences (sentences), a span copied exactly (spans) and quoted with its source (quote), the copy path
(neural_cache), and a conversation's turns (conversation)."""
