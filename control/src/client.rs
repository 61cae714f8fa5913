//! The API client of a master's controllers: its own API server, its own certificate.

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{ControlConfig, ControlError};

pub async fn connect(config: &ControlConfig) -> Result<kube::Client, ControlError> {
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: self
  cluster:
    server: {}
    certificate-authority: {}
contexts:
- name: self
  context: {{cluster: self, user: master}}
current-context: self
users:
- name: master
  user:
    client-certificate: {}
    client-key: {}
",
        config.api_url,
        config.ca_file.display(),
        config.cert_file.display(),
        config.key_file.display()
    );
    let kubeconfig =
        Kubeconfig::from_yaml(&yaml).map_err(|e| ControlError::Client(e.to_string()))?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ControlError::Client(e.to_string()))?;
    kube::Client::try_from(client_config).map_err(|e| ControlError::Client(e.to_string()))
}
