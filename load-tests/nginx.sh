# The nginx of the load-test scripts (sourced by run.sh and stampede.sh, not run): one worker,
# `proxy_cache` in front of the origin with the cache lock, stale-while-updating and background
# update of issue 9, access log off, every file under one directory.

# nginx_conf DIR PORT ORIGIN ZONE [HTTP_LINES [LOCATION_LINES]]: writes DIR/nginx.conf for nginx
# on 127.0.0.1:PORT in front of ORIGIN (host:port); ZONE is the cache's size and limits after
# `keys_zone=cache:`, HTTP_LINES and LOCATION_LINES are more directives for those blocks. The
# directory above DIR must let others through (chmod 711) for a worker started as root.
nginx_conf() {
  local dir=$1 port=$2 origin=$3 zone=$4 http_lines=${5:-} location_lines=${6:-}
  mkdir -p "$dir/cache" "$dir/temp"
  # Workers drop to an unprivileged user when started as root; let them reach their files.
  chmod 711 "$dir"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
$http_lines
  default_type application/octet-stream;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  proxy_cache_path $dir/cache levels=1:2 keys_zone=cache:$zone use_temp_path=off;
  upstream origin { server $origin; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location /obj/ {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache cache;
      proxy_cache_lock on;
$location_lines
      proxy_cache_use_stale updating error timeout;
      proxy_cache_background_update on;
      add_header Cache-Status "nginx; \$upstream_cache_status" always;
    }
  }
}
EOF
}
