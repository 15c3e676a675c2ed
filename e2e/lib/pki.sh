# Certificates and keys for the local control plane, made once per state dir
# with openssl. Sourced by e2e/stack.
# shellcheck shell=bash

PKI_DIR=$STATE_DIR/pki

# issue_cert NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
issue_cert() {
  local name=$1 subject=$2 san=${3:-}
  local ext=(-addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature,keyEncipherment")
  if [ -n "$san" ]; then
    ext+=(-addext "subjectAltName=$san" -addext "extendedKeyUsage=serverAuth,clientAuth")
  else
    ext+=(-addext "extendedKeyUsage=clientAuth")
  fi
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr" -subj "$subject" "${ext[@]}" 2>/dev/null
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 3650 -copy_extensions copy -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr"
}

# The broker's certificate (a PEM key store: key then certificate) and a
# client certificate for mutual TLS, plus the SASL user's password. Kept
# apart from the control plane's set so an existing state dir gains them.
# The broker's serving certificate: 127.0.0.1 for the tests, and with the
# node the node IP, where Pods reach its SASL over TLS listener.
issue_kafka_broker_cert() {
  local names="IP:127.0.0.1,DNS:localhost"
  node_mode && names+=",IP:$NODE_IP"
  issue_cert kafka-broker "/CN=kafka-broker" "$names"
  cat "$PKI_DIR/kafka-broker.key" "$PKI_DIR/kafka-broker.crt" >"$PKI_DIR/kafka-broker.pem"
  chmod 600 "$PKI_DIR/kafka-broker.key" "$PKI_DIR/kafka-broker.pem"
}

ensure_kafka_pki() {
  [ -f "$PKI_DIR/.kafka-complete" ] && return 0
  log "generating Kafka certificates in $PKI_DIR"
  issue_kafka_broker_cert
  node_mode && touch "$PKI_DIR/.kafka-node-ip"
  issue_cert kafka-client "/CN=mcp-kafka-sidecar"
  openssl rand -hex 16 >"$PKI_DIR/kafka-sasl-password"
  printf '%s' "$KAFKA_SASL_USER" >"$PKI_DIR/kafka-sasl-username"
  chmod 600 "$PKI_DIR"/*.key "$PKI_DIR/kafka-broker.pem" "$PKI_DIR/kafka-sasl-password"
  touch "$PKI_DIR/.kafka-complete"
}

# The tenants' SCRAM passwords (see KAFKA_TENANTS in components.sh), one
# file per tenant beside kafka-sasl-password; their own marker, so that a
# state dir made before the tenants existed gains them.
ensure_kafka_tenant_pki() {
  [ -f "$PKI_DIR/.kafka-tenants-complete" ] && return 0
  local tenant
  for tenant in "${KAFKA_TENANTS[@]}"; do
    openssl rand -hex 16 >"$PKI_DIR/kafka-$tenant-password"
    printf '%s' "$tenant" >"$PKI_DIR/kafka-$tenant-username"
    chmod 600 "$PKI_DIR/kafka-$tenant-password"
  done
  touch "$PKI_DIR/.kafka-tenants-complete"
}

ensure_pki() {
  [ -f "$PKI_DIR/.complete" ] && return 0
  need_cmd openssl
  log "generating certificates in $PKI_DIR"
  rm -rf "$PKI_DIR"; mkdir -p "$PKI_DIR"; chmod 700 "$PKI_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" -subj "/CN=mcp-kafka-operator test ground CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null \
    || die "openssl could not create the CA"
  issue_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"
  # system:masters is the admin group; the controller-manager's name is what
  # the bootstrap RBAC policy grants its permissions to.
  issue_cert admin "/O=system:masters/CN=mcpk-admin"
  issue_cert controller-manager "/CN=system:kube-controller-manager"
  # The ServiceAccount token signing key (TokenRequest issues, TokenReview checks).
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  chmod 600 "$PKI_DIR"/*.key
  touch "$PKI_DIR/.complete"
}

# Keycloak's HTTPS certificate, from the same CA, so a client that trusts
# ca.crt (MCPK_OIDC_CA_FILE) trusts the identity provider too. Its own
# marker, so that an existing state dir gains it.
ensure_keycloak_pki() {
  [ -f "$PKI_DIR/.keycloak-complete" ] && return 0
  log "generating Keycloak's certificate in $PKI_DIR"
  issue_cert keycloak "/CN=keycloak" "IP:127.0.0.1,DNS:localhost"
  chmod 600 "$PKI_DIR/keycloak.key"
  touch "$PKI_DIR/.keycloak-complete"
}
