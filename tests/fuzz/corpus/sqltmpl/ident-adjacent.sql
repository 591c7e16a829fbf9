SELECT a:value, b:header.h--comment
, x