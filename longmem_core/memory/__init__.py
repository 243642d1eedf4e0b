"""The memory bank: chunks of keys and values with their sources (memory_bank), the search structures over their mean
keys (index), and bank files on disk (bank_files)."""
