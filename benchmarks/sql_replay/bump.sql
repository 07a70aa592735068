\set r random(1, 60000)
UPDATE x_jobs SET meta = meta WHERE id = (lpad(to_hex(:r), 12, '0') || '70008000000000000000')::uuid AND state = 'pending';
