"""The LongMem model: the frozen backbone (backbone, spm_tokenizer), the residual SideNet and its memory attention
(side_network, attention), caches and generation (kv_cache, generation, decode_schedule, threads), prompt scoring
(scoring), checkpoints, prompts, reading in segments (segments), and the model's search of its memory (search).
``model.LongMemModel`` ties them together."""
