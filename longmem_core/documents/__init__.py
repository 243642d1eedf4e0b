"""Files into text: plain text and PDF (data, pdf), page layout (layout: running headers, page numbers, contents
lines), JSON-lines records (records), and how a document fits a bank (reading_plan)."""
